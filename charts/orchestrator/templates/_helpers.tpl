{{- define "orchestrator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "orchestrator.fullname" -}}
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

{{- define "orchestrator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "orchestrator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end }}

{{- define "orchestrator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "orchestrator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "orchestrator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "orchestrator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* True (non-empty) when the ConfigMap of playbooks and known_hosts has anything in it. */}}
{{- define "orchestrator.hasConfig" -}}
{{- if or .Values.config.playbooks .Values.config.knownHosts }}true{{ end }}
{{- end }}

{{/* The Secret the inventories are mounted from: the chart's own, the one named in values, or none. */}}
{{- define "orchestrator.inventorySecret" -}}
{{- if .Values.existingInventorySecret }}
{{- .Values.existingInventorySecret }}
{{- else if .Values.inventories }}
{{- include "orchestrator.fullname" . }}-inventories
{{- end }}
{{- end }}

{{/* The values that would put a secret in the wrong place, or mount one the worker cannot read. */}}
{{- define "orchestrator.checkSecrets" -}}
{{- if hasKey .Values.config "inventories" }}
{{- fail "config.inventories moved to inventories (rendered into a Secret, never a ConfigMap): move the files there, or name your own Secret in existingInventorySecret" }}
{{- end }}
{{- if and .Values.inventories .Values.existingInventorySecret }}
{{- fail "give inventories (the chart makes a Secret of them) or existingInventorySecret (your own Secret), not both" }}
{{- end }}
{{- range $name, $_ := .Values.inventories }}
{{- include "orchestrator.checkFileName" (list "inventories" $name) }}
{{- end }}
{{- $reserved := list "ORCH_BROKER_URL" "ORCH_DATABASE_URL" "ORCH_QUEUE" "ORCH_WORKER_CONCURRENCY" "ORCH_RECONCILE_EVERY" "ORCH_RECONCILE_AFTER" "ORCH_LOCK_STALE_AFTER" "ORCH_HOME" "ORCH_AUDIT_KEY" "ORCH_AUDIT_CHECKPOINTS" "ORCH_AUDIT_ORIGIN" "ORCH_AUDIT_CHECKPOINT_EVERY" "ORCH_LB_SAMPLE_EVERY" }}
{{- range $i, $e := .Values.secretEnv }}
{{- if not (and (kindIs "map" $e) $e.name $e.secret $e.key) }}
{{- fail (printf "secretEnv[%d]: give name, secret and key, e.g. {name: DB_PASSWORD, secret: app-db, key: password}" $i) }}
{{- end }}
{{- if not (regexMatch "^[A-Za-z_][A-Za-z0-9_]*$" $e.name) }}
{{- fail (printf "secretEnv[%d]: %q is not an environment variable name; letters, digits and '_'" $i $e.name) }}
{{- end }}
{{- if has $e.name $reserved }}
{{- fail (printf "secretEnv[%d]: %s is set by the chart itself; pick another name" $i $e.name) }}
{{- end }}
{{- end }}
{{- $taken := list "/tmp" "/var/lib/orchestrator" .Values.config.mountPath .Values.inventoryMountPath .Values.ssh.mountPath .Values.audit.keyMountPath .Values.audit.checkpointsMountPath }}
{{- range $i, $f := .Values.secretFiles }}
{{- if not (and (kindIs "map" $f) $f.secret $f.mountPath) }}
{{- fail (printf "secretFiles[%d]: give secret and mountPath, e.g. {secret: app-db, mountPath: /run/secrets/app-db}" $i) }}
{{- end }}
{{- if not (isAbs $f.mountPath) }}
{{- fail (printf "secretFiles[%d]: mountPath %q is not an absolute path" $i $f.mountPath) }}
{{- end }}
{{- if has (clean $f.mountPath) $taken }}
{{- fail (printf "secretFiles[%d]: mountPath %s is already used by the chart or another secretFiles entry; pick another" $i $f.mountPath) }}
{{- end }}
{{- range (list $.Values.config.mountPath $.Values.inventoryMountPath $.Values.ssh.mountPath) }}
{{- if hasPrefix (printf "%s/" (clean .)) (clean $f.mountPath) }}
{{- fail (printf "secretFiles[%d]: mountPath %s is inside %s, a read-only mount of the chart's; pick a path outside it" $i $f.mountPath .) }}
{{- end }}
{{- end }}
{{- $taken = append $taken (clean $f.mountPath) }}
{{- end }}
{{- $mounted := or (include "orchestrator.inventorySecret" .) .Values.ssh.existingSecret .Values.secretFiles }}
{{- $ctx := .Values.podSecurityContext }}
{{- if and $mounted (not $ctx.fsGroup) (ne (toString $ctx.runAsUser) "0") }}
{{- fail "podSecurityContext.fsGroup: Secrets are mounted with mode 0440 (owner root, group fsGroup), so a non-root worker reads them only through fsGroup; set it (e.g. to runAsGroup)" }}
{{- end }}
{{- end }}

{{/* A file name as a ConfigMap or Secret key ([-._a-zA-Z0-9]); refuses anything else. (list WHERE NAME) */}}
{{- define "orchestrator.checkFileName" -}}
{{- $name := index . 1 }}
{{- if not (regexMatch "^[-._a-zA-Z0-9]+$" $name) }}
{{- fail (printf "%s: file name %q may use only letters, digits, '-', '_' and '.'" (index . 0) $name) }}
{{- end }}
{{- end }}

{{/* A ConfigMap key: the kind and a safe file name. (list KIND NAME) */}}
{{- define "orchestrator.fileKey" -}}
{{- include "orchestrator.checkFileName" (list (printf "config.%s" (index . 0)) (index . 1)) }}
{{- printf "%s-%s" (index . 0) (index . 1) }}
{{- end }}
