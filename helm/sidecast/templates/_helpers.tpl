{{/* Names, labels and the small pieces every template shares. */}}

{{- define "sidecast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sidecast.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "sidecast.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "sidecast.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sidecast.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sidecast.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sidecast.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "sidecast.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sidecast
{{- end -}}

{{/*
Image reference. Call with (dict "root" $ "image" .Values.core.image "suffix" "").
<image.registry>/<repository>:<tag>. The component's own tag wins as given; otherwise the global image.tag
or the chart's appVersion, plus the suffix (e.g. "-cuda" for the GPU stt image).
*/}}
{{- define "sidecast.image" -}}
{{- $registry := .root.Values.image.registry -}}
{{- $tag := .image.tag | default (printf "%s%s" (.root.Values.image.tag | default .root.Chart.AppVersion) (.suffix | default "")) -}}
{{- if $registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $registry) .image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Native sidecar containers (initContainers with restartPolicy Always) need Kubernetes >= 1.29. */}}
{{- define "sidecast.nativeSidecars" -}}
{{- $mode := toString .Values.nativeSidecars -}}
{{- if eq $mode "auto" -}}
{{- if semverCompare ">=1.29.0-0" .Capabilities.KubeVersion.Version }}true{{ end -}}
{{- else if eq $mode "true" -}}
true
{{- end -}}
{{- end -}}

{{/* The enabled sidecars, in a fixed order: a list of names. */}}
{{- define "sidecast.enabledSidecars" -}}
{{- $out := list -}}
{{- range $name := list "stt" "autocrop" "bitrate" -}}
{{- if (index $.Values.sidecars $name).enabled -}}
{{- $out = append $out $name -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Container securityContext shared by every container: non-root, read-only root, nothing extra. */}}
{{- define "sidecast.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "sidecast.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Redis URL for the ads API: external when set, else the in-chart Redis, else empty (embedded store). */}}
{{- define "sidecast.redisEnabled" -}}
{{- if or .Values.externalRedis.url .Values.externalRedis.existingSecret .Values.redis.enabled }}true{{ end -}}
{{- end -}}

{{- define "sidecast.adsSecret" -}}
{{- .Values.ads.apiKeys.existingSecret | default (printf "%s-ads" (include "sidecast.fullname" .)) -}}
{{- end -}}

{{/* Media every replica can read: a bucket, a shared (ReadWriteMany) volume, or a host path. */}}
{{- define "sidecast.sharedStorage" -}}
{{- if or .Values.storage.s3.bucket .Values.storage.sharedVolume.claimName .Values.storage.hostPath }}true{{ end -}}
{{- end -}}

{{/* A registry every replica can reach: the in-chart PostgreSQL or an external one. */}}
{{- define "sidecast.sharedRegistry" -}}
{{- if or .Values.registry.external.url .Values.registry.external.existingSecret .Values.registry.postgresql.enabled }}true{{ end -}}
{{- end -}}

{{- define "sidecast.inChartRegistry" -}}
{{- if and .Values.registry.postgresql.enabled (not .Values.registry.external.url) (not .Values.registry.external.existingSecret) }}true{{ end -}}
{{- end -}}

{{/* The HPA runs only where replicas can share streams (shared media and registry). */}}
{{- define "sidecast.autoscaling" -}}
{{- if and .Values.core.autoscaling.enabled (include "sidecast.sharedStorage" .) (include "sidecast.sharedRegistry" .) }}true{{ end -}}
{{- end -}}

{{- define "sidecast.storageUrl" -}}
{{- $s3 := .Values.storage.s3 -}}
{{- if $s3.bucket -}}
s3://{{ $s3.bucket }}/{{ $s3.prefix }}{{ with $s3.endpoint }}?endpoint={{ . }}{{ end }}
{{- else if or .Values.storage.sharedVolume.claimName .Values.storage.hostPath -}}
/media
{{- else -}}
local
{{- end -}}
{{- end -}}

{{- define "sidecast.registrySecret" -}}
{{- printf "%s-registry" (include "sidecast.fullname" .) -}}
{{- end -}}

{{/* The server's SIDECAST_REGISTRY (and what it is built from); none: SQLite in the pod (one replica). */}}
{{- define "sidecast.registryEnv" -}}
{{- $ext := .Values.registry.external -}}
{{- if $ext.existingSecret }}
- name: SIDECAST_REGISTRY
  valueFrom:
    secretKeyRef: {name: {{ $ext.existingSecret }}, key: {{ $ext.existingSecretKey }}}
{{- else if $ext.url }}
- name: SIDECAST_REGISTRY
  valueFrom:
    secretKeyRef: {name: {{ include "sidecast.registrySecret" . }}, key: url}
{{- else if .Values.registry.postgresql.enabled }}
- name: REGISTRY_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .Values.registry.postgresql.auth.existingSecret | default (include "sidecast.registrySecret" .) }}, key: password}
- name: SIDECAST_REGISTRY
  value: postgresql://sidecast:$(REGISTRY_PASSWORD)@{{ include "sidecast.fullname" . }}-registry:5432/sidecast
{{- end }}
{{- end -}}

{{/*
Checks JSON Schema cannot express (it cannot compare two values), and keys of earlier chart versions,
each with a message that names what to use instead.
*/}}
{{- define "sidecast.checkValues" -}}
{{- if .Values.streamGroups }}
{{- fail "streamGroups was removed (chart 0.2): streams are data now, not chart values. Create each camera or channel through the control API (POST /v1/streams; see docs/kubernetes.md), with no helm upgrade; one release serves any number of them" }}
{{- end }}
{{- if .Values.streamKeys }}
{{- fail "streamKeys was removed (chart 0.2): every push stream gets its own key from the control API (POST /v1/streams returns it; POST /v1/streams/ID/key replaces it), stored hashed in the registry" }}
{{- end }}
{{- if .Values.core.ladder }}
{{- fail "core.ladder was removed (chart 0.2): a ladder is a stream's own option, set it per stream through the API: {\"options\": {\"ladder\": \"720p:2500k,360p:800k\"}}" }}
{{- end }}
{{- $ports := dict -}}
{{- $named := list (list "core.ports.http" .Values.core.ports.http) (list "core.ports.api" .Values.core.ports.api) (list "core.ports.rtmp" .Values.core.ports.rtmp) (list "core.ports.srt" .Values.core.ports.srt) -}}
{{- range $name := list "stt" "autocrop" "bitrate" }}
{{- if (index $.Values.sidecars $name).enabled }}
{{- $named = append $named (list (printf "sidecars.%s.port" $name) (index $.Values.sidecars $name).port) }}
{{- end }}
{{- end }}
{{- range $named }}
{{- $key := toString (index . 1) }}
{{- if hasKey $ports $key }}
{{- fail (printf "%s and %s are both %s: the server and its sidecars share the pod's network, so every port must differ" (get $ports $key) (index . 0) $key) }}
{{- end }}
{{- $_ := set $ports $key (index . 0) }}
{{- end }}
{{- if and (gt (int .Values.core.replicas) 1) (not (and (include "sidecast.sharedStorage" .) (include "sidecast.sharedRegistry" .))) }}
{{- fail "core.replicas > 1 needs media every replica can read (storage.s3.bucket, storage.sharedVolume.claimName or storage.hostPath) and a shared registry (registry.postgresql.enabled or registry.external)" }}
{{- end }}
{{- end -}}

{{- define "sidecast.redisSecret" -}}
{{- .Values.redis.auth.existingSecret | default (printf "%s-redis" (include "sidecast.fullname" .)) -}}
{{- end -}}
