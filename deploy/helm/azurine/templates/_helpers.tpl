{{/* The name every object of the release starts with. */}}
{{- define "azurine.fullname" -}}
{{- printf "%s-azurine" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
