{{/* The release's name for everything it creates. */}}
{{- define "tollgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of everything the release makes; a service's objects add tollgate.selector. */}}
{{- define "tollgate.common" -}}
app.kubernetes.io/part-of: tollgate
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tollgate.labels" -}}
{{ include "tollgate.common" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of one service's pods: (dict "root" $ "name" "ledger") */}}
{{- define "tollgate.selector" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "tollgate.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end -}}

{{/* LEDGER_, USAGE_SYNC_: a service's settings prefix. */}}
{{- define "tollgate.prefix" -}}
{{ . | upper | replace "-" "_" }}_
{{- end -}}

{{/* A service's Strimzi KafkaUser, and the Secret Strimzi makes for it: (dict "root" $ "name" "ledger") */}}
{{- define "tollgate.kafkaUser" -}}
{{ include "tollgate.fullname" .root }}-{{ .name }}-kafka
{{- end -}}

{{/* tollgate_usage_sync: a service's Python module. */}}
{{- define "tollgate.module" -}}
tollgate_{{ . | replace "-" "_" }}
{{- end -}}

{{/* The topic a subscription consumes (the services' specs; tests/test_helm_chart.py checks). */}}
{{- define "tollgate.subscriptionTopic" -}}
{{- $topics := dict "payments" "payments.events" "usage" "usage.recorded" "keys" "keys.events" "alerts" "ledger.alerts" "balances" "ledger.balances" "portal" "portal.events" -}}
{{- index $topics . -}}
{{- end -}}

{{/* Pod security: non-root, no privilege escalation, no capabilities, RuntimeDefault seccomp. */}}
{{- define "tollgate.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
fsGroup: {{ .Values.podSecurity.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "tollgate.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Settings every process of a service gets besides its Secret: (dict "root" $ "name" "ledger") */}}
{{- define "tollgate.env" -}}
{{- $p := include "tollgate.prefix" .name -}}
{{- $root := .root -}}
- name: {{ $p }}KAFKA_BOOTSTRAP_SERVERS
  value: {{ $root.Values.kafka.bootstrapServers | quote }}
- name: {{ $p }}KAFKA_SECURITY_PROTOCOL
  value: {{ $root.Values.kafka.securityProtocol | quote }}
- name: {{ $p }}KAFKA_SASL_MECHANISM
  value: {{ $root.Values.kafka.saslMechanism | quote }}
{{- if and $root.Values.topics.strimzi.enabled $root.Values.topics.strimzi.users }}
{{- /* The KafkaUser of kafkausers.yaml, and the Secret Strimzi makes for it. */}}
- name: {{ $p }}KAFKA_SASL_USERNAME
  value: {{ include "tollgate.kafkaUser" . | quote }}
- name: {{ $p }}KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "tollgate.kafkaUser" . | quote }}
      key: password
{{- end }}
{{- if $root.Values.kafka.caSecret }}
- name: {{ $p }}KAFKA_SSL_CAFILE
  value: /etc/tollgate/kafka-ca/ca.crt
{{- end }}
- name: {{ $p }}DATABASE_SSLMODE
  value: {{ $root.Values.postgres.sslmode | quote }}
{{- if $root.Values.postgres.caSecret }}
- name: {{ $p }}DATABASE_SSLROOTCERT
  value: /etc/tollgate/postgres-ca/ca.crt
{{- end }}
{{- if ne .name "keys" }}
- name: {{ $p }}KEYS_INTERNAL_URL
  value: {{ printf "http://%s-keys-admin:9090" (include "tollgate.fullname" $root) | quote }}
{{- end }}
{{- range $k, $v := (index $root.Values.services .name).env }}
- name: {{ $p }}{{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- end -}}

{{/* CA bundles, mounted where the settings above point. */}}
{{- define "tollgate.caVolumes" -}}
{{- if .Values.kafka.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.caSecret }}
{{- end }}
{{- if .Values.postgres.caSecret }}
- name: postgres-ca
  secret:
    secretName: {{ .Values.postgres.caSecret }}
{{- end }}
{{- end -}}

{{- define "tollgate.caMounts" -}}
{{- if .Values.kafka.caSecret }}
- name: kafka-ca
  mountPath: /etc/tollgate/kafka-ca
  readOnly: true
{{- end }}
{{- if .Values.postgres.caSecret }}
- name: postgres-ca
  mountPath: /etc/tollgate/postgres-ca
  readOnly: true
{{- end }}
{{- end -}}
