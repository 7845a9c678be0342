# Static AWS keys in workloads, as a Gatekeeper-style Rego policy: the peer that
# benches/peers.rs evaluates with regorus on the same reviews and corpus as hatrack.
#
# Input: an admission.k8s.io/v1 AdmissionReview (`input.request.object` is the workload;
# in a Gatekeeper ConstraintTemplate the same rules read `input.review.object`).
# Output: `violation`, a set of {"msg": ...}; a workload is denied when it is not empty.
#
# What Rego can express here, written as an expert would:
# - env vars named like AWS credentials (exact names and `<PREFIX>_<NAME>` suffixes, any case)
#   with a literal value or a valueFrom;
# - literal access key ids (AKIA/ASIA/ABIA/ACCA + 16) in env values, args and command;
# - literal secret access keys assigned in env values, args and command
#   (`aws_secret_access_key=<40 chars>`);
# - a shared credentials file: AWS_SHARED_CREDENTIALS_FILE set, or a Secret volume mounted
#   at a `.aws` directory.
# What it cannot: a policy sees only the reviewed object, not the Secrets and ConfigMaps it
# references (env valueFrom with other names, envFrom, mounted files), so those are not judged.
# Gatekeeper can replicate Secrets into `data.inventory`, which means giving the policy
# engine read access to every Secret value in the cluster; hatrack's webhook keeps only
# derived facts. That configuration is out of scope here.
package hatrack.statickeys

import rego.v1

credential_names := {
	"AWS_ACCESS_KEY_ID",
	"AWS_SECRET_ACCESS_KEY",
	"AWS_SESSION_TOKEN",
	"AWS_SECURITY_TOKEN",
	"AWS_ACCESS_KEY",
	"AWS_SECRET_KEY",
}

access_key_re := `(^|[^A-Za-z0-9])(AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}([^A-Za-z0-9]|$)`

secret_assignment_re := `(?i)(secret_?access_?key|secret_?key)["']?\s*[:=]\s*["']?[A-Za-z0-9/+]{40}([^A-Za-z0-9/+=]|$)`

obj := input.request.object

pod_spec := obj.spec if obj.kind == "Pod"

pod_spec := obj.spec.template.spec if obj.kind in {
	"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job",
}

pod_spec := obj.spec.jobTemplate.spec.template.spec if obj.kind == "CronJob"

containers contains c if some c in pod_spec.containers

containers contains c if some c in pod_spec.initContainers

containers contains c if some c in pod_spec.ephemeralContainers

is_credential_name(name) if upper(name) in credential_names

is_credential_name(name) if {
	some n in credential_names
	endswith(upper(name), concat("", ["_", n]))
}

has_value(e) if e.value != ""

has_value(e) if e.valueFrom

# Literal strings a container carries: env values, args and command.
literals(c) := array.concat(
	array.concat([e.value | some e in c.env; is_string(e.value)], object.get(c, "args", [])),
	object.get(c, "command", []),
)

violation contains {"msg": msg} if {
	some c in containers
	some e in c.env
	is_credential_name(e.name)
	has_value(e)
	msg := sprintf("container %q: env %s carries a static AWS credential", [c.name, e.name])
}

violation contains {"msg": msg} if {
	some c in containers
	some s in literals(c)
	regex.match(access_key_re, s)
	msg := sprintf("container %q: a literal AWS access key id", [c.name])
}

violation contains {"msg": msg} if {
	some c in containers
	some s in literals(c)
	regex.match(secret_assignment_re, s)
	msg := sprintf("container %q: a literal AWS secret access key", [c.name])
}

violation contains {"msg": msg} if {
	some c in containers
	some e in c.env
	e.name == "AWS_SHARED_CREDENTIALS_FILE"
	msg := sprintf("container %q: AWS_SHARED_CREDENTIALS_FILE points at a static credentials file", [c.name])
}

violation contains {"msg": msg} if {
	some v in pod_spec.volumes
	v.secret
	some c in containers
	some m in c.volumeMounts
	m.name == v.name
	endswith(trim_right(m.mountPath, "/"), "/.aws")
	msg := sprintf("container %q: Secret %q mounted as a shared credentials file", [c.name, v.secret.secretName])
}
