{{/* Chart name, truncated to leave room for the "-controller"/"-webhook" suffixes. */}}
{{- define "hatrack.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "hatrack.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "hatrack.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "hatrack.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hatrack.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "hatrack.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hatrack
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "controller") */}}
{{- define "hatrack.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hatrack.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "hatrack.componentLabels" -}}
{{ include "hatrack.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "hatrack.annotations" -}}
{{- with .Values.commonAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "hatrack.controller.fullname" -}}{{ include "hatrack.fullname" . }}-controller{{- end -}}
{{- define "hatrack.webhook.fullname" -}}{{ include "hatrack.fullname" . }}-webhook{{- end -}}

{{- define "hatrack.controller.serviceAccountName" -}}
{{- if .Values.controller.serviceAccount.create -}}
{{- default (include "hatrack.controller.fullname" .) .Values.controller.serviceAccount.name -}}
{{- else -}}
{{- required "controller.serviceAccount.name is required when controller.serviceAccount.create is false" .Values.controller.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "hatrack.webhook.serviceAccountName" -}}
{{- if .Values.webhook.serviceAccount.create -}}
{{- default (include "hatrack.webhook.fullname" .) .Values.webhook.serviceAccount.name -}}
{{- else -}}
{{- required "webhook.serviceAccount.name is required when webhook.serviceAccount.create is false" .Values.webhook.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "hatrack.leaseName" -}}
{{- default (include "hatrack.controller.fullname" .) .Values.controller.leaderElection.leaseName -}}
{{- end -}}

{{- define "hatrack.certSecretName" -}}
{{- if .Values.certManager.enabled -}}
{{- include "hatrack.webhook.fullname" . }}-tls
{{- else -}}
{{- default (printf "%s-tls" (include "hatrack.webhook.fullname" .)) .Values.selfManagedCerts.secretName -}}
{{- end -}}
{{- end -}}

{{/*
Cluster-scoped objects (ClusterRoles, their bindings, the ValidatingWebhookConfiguration) are
shared by every namespace: their names carry the release namespace, so that releases of the
same name in two namespaces (e.g. one per controller.watchNamespace) do not collide.
*/}}
{{- define "hatrack.controller.clusterRoleName" -}}
{{- printf "%s-%s-controller" (include "hatrack.fullname" .) .Release.Namespace -}}
{{- end -}}
{{- define "hatrack.webhook.clusterRoleName" -}}
{{- printf "%s-%s-webhook" (include "hatrack.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* The default IAMGuardrail is cluster-scoped: its name carries the namespace too. */}}
{{- define "hatrack.defaultGuardrailName" -}}
{{- printf "%s-%s-default" (include "hatrack.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* The ValidatingWebhookConfiguration is cluster-scoped: its name carries the namespace. */}}
{{- define "hatrack.webhookConfigurationName" -}}
{{- printf "%s-%s" (include "hatrack.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hatrack.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* webhook.lookups as "on"/"off" (unquoted YAML on/off arrive as booleans). */}}
{{- define "hatrack.lookups" -}}
{{- if or (eq (toString .Values.webhook.lookups) "on") (eq (toString .Values.webhook.lookups) "true") -}}on{{- else -}}off{{- end -}}
{{- end -}}

{{/* Namespaces the workload webhook never sees: the release's, so it can never block its own recovery, and webhook.exemptNamespaces. */}}
{{- define "hatrack.exemptNamespaces" -}}
{{- $ns := list .Release.Namespace -}}
{{- range .Values.webhook.exemptNamespaces }}{{- $ns = append $ns . -}}{{- end -}}
{{- toJson (uniq $ns) -}}
{{- end -}}

{{/* The cluster's own namespaces that are judged in webhook.systemMode through the failurePolicy: Ignore entry (the exempt ones left out). */}}
{{- define "hatrack.systemNamespaces" -}}
{{- $exempt := include "hatrack.exemptNamespaces" . | fromJsonArray -}}
{{- $ns := list -}}
{{- range .Values.webhook.systemNamespaces }}{{- if not (has . $exempt) }}{{- $ns = append $ns . -}}{{- end -}}{{- end -}}
{{- toJson (uniq $ns) -}}
{{- end -}}

{{- define "hatrack.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "hatrack.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
fieldRef is an atomic struct: its apiVersion, which the API server fills in, is written out, so
that a server-side apply of this rendering (helm 4, Flux, Argo CD) matches what is stored
instead of conflicting with it.
*/}}
{{- define "hatrack.downwardEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      apiVersion: v1
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      apiVersion: v1
      fieldPath: metadata.namespace
{{- end -}}

{{/* Settings shared by both webhooks of the ValidatingWebhookConfiguration. */}}
{{- define "hatrack.webhookCommon" -}}
admissionReviewVersions: [v1]
sideEffects: None
matchPolicy: Equivalent
timeoutSeconds: {{ .Values.webhook.timeoutSeconds }}
{{- end -}}

{{/*
--oidc-issuer, required when IRSA is the default trust (the controller would refuse to start).
*/}}
{{- define "hatrack.oidcIssuerArg" -}}
{{- if .Values.cluster.oidcIssuer -}}
- --oidc-issuer={{ .Values.cluster.oidcIssuer }}
{{- else if has "irsa" .Values.controller.defaultTrust -}}
{{- fail "cluster.oidcIssuer is required when controller.defaultTrust includes irsa (or set controller.defaultTrust: [pod-identity])" -}}
{{- end -}}
{{- end -}}

{{/* The cluster's region: required, since roles, ownership tags and Pod Identity trust are
keyed on the cluster's ARN (an install without it would share roles with a same-named cluster
elsewhere). Not derived from aws.region, whose us-east-1 default is no statement about the
cluster. */}}
{{- define "hatrack.clusterRegion" -}}
{{- required "cluster.region is required: the cluster's AWS region (e.g. eu-west-1); roles, their ownership tags and Pod Identity trust are keyed on the cluster's ARN (roles of an install without it are kept and migrated in place)" .Values.cluster.region -}}
{{- end -}}

{{/* Background audit (templates/audit-*.yaml). */}}
{{- define "hatrack.audit.fullname" -}}{{ include "hatrack.fullname" . }}-audit{{- end -}}
{{- define "hatrack.audit.serviceAccountName" -}}
{{- if .Values.audit.serviceAccount.create -}}
{{- default (include "hatrack.audit.fullname" .) .Values.audit.serviceAccount.name -}}
{{- else -}}
{{- required "audit.serviceAccount.name is required when audit.serviceAccount.create is false" .Values.audit.serviceAccount.name -}}
{{- end -}}
{{- end -}}
{{- define "hatrack.audit.clusterRoleName" -}}
{{- printf "%s-%s-audit" (include "hatrack.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* A webhook entry's clientConfig: webhook.url, or the Service. ctx: root, path: the route. */}}
{{- define "hatrack.webhookClient" -}}
{{- $w := .ctx.Values.webhook -}}
clientConfig:
  {{- if $w.url }}
  url: {{ printf "%s%s" (trimSuffix "/" $w.url) .path | quote }}
  {{- else }}
  service:
    name: {{ include "hatrack.webhook.fullname" .ctx }}
    namespace: {{ .ctx.Release.Namespace }}
    path: {{ .path }}
    port: {{ $w.service.port }}
  {{- end }}
{{- end -}}

{{/* The workload kinds the webhook judges (both workload entries). */}}
{{- define "hatrack.workloadRules" -}}
rules:
  - apiGroups: [""]
    apiVersions: [v1]
    # pods/ephemeralcontainers: `kubectl debug` cannot smuggle keys into a running pod.
    resources: [pods, pods/ephemeralcontainers, replicationcontrollers]
    operations: [CREATE, UPDATE]
    scope: Namespaced
  - apiGroups: [apps]
    apiVersions: [v1]
    resources: [deployments, statefulsets, daemonsets, replicasets]
    operations: [CREATE, UPDATE]
    scope: Namespaced
  - apiGroups: [batch]
    apiVersions: [v1]
    resources: [jobs, cronjobs]
    operations: [CREATE, UPDATE]
    scope: Namespaced
  # Kinds that embed pod templates (values.yaml podTemplates).
  {{- range .Values.podTemplates }}
  - apiGroups: [{{ .group | default "" | quote }}]
    apiVersions: ["*"]
    resources: [{{ .resource | quote }}]
    operations: [CREATE, UPDATE]
    scope: "*"
  {{- end }}
{{- end -}}
