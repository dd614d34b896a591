{{/*
One sidecar container. Call with (dict "root" $ "name" "stt" "native" true|false).
Native sidecars (initContainers with restartPolicy: Always) start before the core and stop after it.
Ordinary containers get a preStop pause instead, so they outlive the core's last segment.
*/}}
{{- define "sidecast.sidecarContainer" -}}
{{- $root := .root -}}
{{- $sc := index $root.Values.sidecars .name -}}
{{- $cuda := and (eq .name "stt") (eq (toString $sc.device) "cuda") -}}
- name: {{ .name }}
  image: {{ include "sidecast.image" (dict "root" $root "image" $sc.image "suffix" (ternary "-cuda" "" $cuda)) }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  {{- if .native }}
  restartPolicy: Always
  {{- end }}
  command: ["sidecast"]
  args:
    - --log-format=json
    - sidecar
    - {{ .name }}
    - --listen=0.0.0.0:{{ $sc.port }}
    # one model process serves every stream of its replica
    - --max-streams={{ $root.Values.core.sidecarMaxStreams }}
    {{- if eq .name "stt" }}
    {{- if ne $sc.model.source "baked" }}
    - --model=/models/whisper
    {{- end }}
    {{- if $cuda }}
    - --device=cuda
    {{- end }}
    {{- end }}
    {{- range $sc.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  ports:
    - name: grpc-{{ .name }}
      containerPort: {{ $sc.port }}
      protocol: TCP
  startupProbe:
    grpc: {port: {{ $sc.port }}}
    periodSeconds: 2
    failureThreshold: 90
  livenessProbe:
    grpc: {port: {{ $sc.port }}}
    periodSeconds: 10
    timeoutSeconds: 3
    failureThreshold: 3
  readinessProbe:
    grpc: {port: {{ $sc.port }}, service: sidecast.sidecar.v1.Sidecar}
    periodSeconds: 5
    timeoutSeconds: 3
  {{- if not .native }}
  lifecycle:
    preStop:
      exec:
        command: ["sleep", "{{ add1 (ceil (addf $root.Values.core.segmentDuration $root.Values.core.decisionWindow)) }}"]
  {{- end }}
  resources:
    {{- $res := deepCopy $sc.resources }}
    {{- if $cuda }}
    {{- $limits := merge (dict "nvidia.com/gpu" $sc.gpu.count) ($res.limits | default dict) }}
    {{- $_ := set $res "limits" $limits }}
    {{- end }}
    {{- toYaml $res | nindent 4 }}
  securityContext:
    {{- include "sidecast.containerSecurityContext" $root | nindent 4 }}
  volumeMounts:
    - {name: shm, mountPath: /dev/shm}
    - {name: tmp-{{ .name }}, mountPath: /tmp}
    {{- if and (eq .name "stt") (ne $sc.model.source "baked") }}
    - name: stt-model
      mountPath: /models/whisper
      readOnly: true
      {{- with $sc.model.subPath }}
      subPath: {{ . }}
      {{- end }}
    {{- end }}
{{- end -}}
