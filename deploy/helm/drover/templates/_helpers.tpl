{{/* Labels on every object. */}}
{{- define "drover.labels" -}}
app.kubernetes.io/name: drover
app.kubernetes.io/part-of: drover
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The labels that select drover's pods. */}}
{{- define "drover.selectorLabels" -}}
app.kubernetes.io/name: drover
app.kubernetes.io/component: controller
{{- end -}}
