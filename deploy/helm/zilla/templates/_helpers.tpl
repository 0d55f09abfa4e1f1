{{- define "zilla.name" -}}{{ .Release.Name }}{{- end -}}
{{- define "zilla.labels" -}}
app.kubernetes.io/name: zilla
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
