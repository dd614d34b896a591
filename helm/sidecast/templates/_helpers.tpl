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

{{/* The name of one stream group's objects: <fullname>-<group>. */}}
{{- define "sidecast.groupName" -}}
{{- printf "%s-%s" (include "sidecast.fullname" .root) .group.name | trunc 63 | trimSuffix "-" -}}
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

{{- define "sidecast.streamKeysSecret" -}}
{{- .Values.streamKeys.existingSecret | default (printf "%s-stream-keys" (include "sidecast.fullname" .)) -}}
{{- end -}}

{{- define "sidecast.adsSecret" -}}
{{- .Values.ads.apiKeys.existingSecret | default (printf "%s-ads" (include "sidecast.fullname" .)) -}}
{{- end -}}
