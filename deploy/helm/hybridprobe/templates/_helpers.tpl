{{/*
The chart's shared pieces: labels, the image, the agent's config, and the objects read from the
kustomize components themselves (files/ links to them, so the two installs cannot drift).
*/}}

{{/* The kustomize base's labels on every object, and Helm's own. */}}
{{- define "hybridprobe.labels" -}}
app.kubernetes.io/name: hybridprobe
app.kubernetes.io/part-of: hybridprobe
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The agents' pod labels, which the DaemonSet, the Services, the PodMonitors and the
network policy select: the kustomize base's, so either install's objects find the other's pods. */}}
{{- define "hybridprobe.selectorLabels" -}}
app.kubernetes.io/name: hybridprobe
app.kubernetes.io/component: agent
{{- end }}

{{/* Where the node's files are, for the config's ${HYBRIDPROBE_HOST_NETNS} and
${HYBRIDPROBE_HOST_RESOLV_CONF}. Takes (dict "netns" PATH "resolvConf" PATH). */}}
{{- define "hybridprobe.hostFilesEnv" -}}
- name: HYBRIDPROBE_HOST_NETNS
  value: {{ .netns }}
- name: HYBRIDPROBE_HOST_RESOLV_CONF
  value: {{ .resolvConf }}
{{- end }}

{{- define "hybridprobe.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The agent's config file: the value as given (a string, or a map as YAML), else the shipped
default for the chosen privileges. */}}
{{- define "hybridprobe.config" -}}
{{- $config := .Values.config -}}
{{- if empty $config -}}
{{- if .Values.hostChecks.enabled -}}
{{ .Files.Get "files/config.yaml" }}
{{- else -}}
{{ .Files.Get "files/config-no-host.yaml" }}
{{- end -}}
{{- else if kindIs "string" $config -}}
{{ $config }}
{{- else if kindIs "map" $config -}}
{{ toYaml $config }}
{{- else -}}
{{ fail (printf "config: expected a YAML string or a map, got %s" (kindOf $config)) }}
{{- end -}}
{{- end }}

{{/* One object of a kustomize component, read from files/: its namespace set to the release's
(or `namespace`), Helm's labels and `labels` added. Everything else stays as the component has it.
Takes (dict "ctx" $ "file" "files/NAME.yaml" ["namespace" NS] ["labels" MAP]). */}}
{{- define "hybridprobe.component" -}}
{{- $ctx := .ctx -}}
{{- $text := $ctx.Files.Get .file -}}
{{- if not $text -}}
{{ fail (printf "%s is missing from the chart: its link into deploy/ is broken" .file) }}
{{- end -}}
{{- $object := fromYaml $text -}}
{{- if hasKey $object "Error" -}}
{{ fail (printf "%s: %s" .file $object.Error) }}
{{- end -}}
{{- $labels := merge (dict) (.labels | default dict) (include "hybridprobe.labels" $ctx | fromYaml) ($object.metadata.labels | default dict) -}}
{{- $_ := set $object.metadata "labels" $labels -}}
{{- $_ := set $object.metadata "namespace" (.namespace | default $ctx.Release.Namespace) -}}
{{ toYaml $object }}
{{- end }}
