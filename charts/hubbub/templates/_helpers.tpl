{{/*
Chart name, truncated to the 63 characters a label value may hold.
*/}}
{{- define "hubbub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: "<release>-<chart>", or just the release name when it already
contains the chart name, so `helm install hubbub` gives objects named "hubbub".
*/}}
{{- define "hubbub.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "hubbub.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object the chart creates, without a component.
*/}}
{{- define "hubbub.commonLabels" -}}
helm.sh/chart: {{ include "hubbub.chart" . }}
app.kubernetes.io/name: {{ include "hubbub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hubbub
{{- end }}

{{/*
Labels on the operator's objects.
*/}}
{{- define "hubbub.labels" -}}
{{ include "hubbub.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Selector labels: stable across upgrades (a Deployment's selector is immutable).
*/}}
{{- define "hubbub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hubbub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "hubbub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hubbub.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The Hubbub image: repository@digest when a digest is given, else
repository:tag with the tag defaulting to the chart's appVersion.
*/}}
{{- define "hubbub.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The image the operator deploys chat pods from: chatImage, else the operator's own.
*/}}
{{- define "hubbub.chatImage" -}}
{{- default (include "hubbub.image" .) .Values.chatImage }}
{{- end }}

{{/*
Namespaces whose ChatRooms the operator may touch, as a list; empty means all.
*/}}
{{- define "hubbub.watchNamespaces" -}}
{{- join "," (.Values.watchNamespaces | uniq) }}
{{- end }}
