#!/usr/bin/env python3
"""Writes tests/corpus/60-false-positive-corpus.yaml: synthetic (never real) secrets and
configs of other clouds, SaaS and frameworks, each placed in one Deployment the ways a chart
puts it (env literal under its usual name, the same value in a Secret read by envFrom and
mounted as a file, and an argument). None is AWS key material: every workload must be allowed.

Deterministic (seeded): `python3 scripts/gen-false-positive-corpus.py` regenerates the same file.
"""
import base64
import hashlib
import json
import random
import string
import uuid

rng = random.Random(13)
ALNUM = string.ascii_letters + string.digits


def rand(n, chars=ALNUM):
    return "".join(rng.choice(chars) for _ in range(n))


def hexs(n):
    return rand(n, "0123456789abcdef")


def b64(nbytes):
    return base64.b64encode(bytes(rng.getrandbits(8) for _ in range(nbytes))).decode()


def pem(kind, nbytes=600):
    body = b64(nbytes)
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n"


def jwt():
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
    sig = base64.urlsafe_b64encode(bytes(rng.getrandbits(8) for _ in range(32))).decode().rstrip("=")
    return enc({"alg": "HS256", "typ": "JWT"}) + "." + enc({"sub": str(uuid.UUID(int=rng.getrandbits(128))), "iat": 1700000000}) + "." + sig


gcp_sa = json.dumps({
    "type": "service_account", "project_id": "example-project-123",
    "private_key_id": hexs(40), "private_key": pem("PRIVATE KEY"),
    "client_email": "app@example-project-123.iam.gserviceaccount.com",
    "client_id": str(rng.getrandbits(64)), "token_uri": "https://oauth2.googleapis.com/token",
}, indent=2)

# (name, env var, value)
SAMPLES = [
    ("django-secret-key", "SECRET_KEY", rand(50, ALNUM + "!@#%^&*(-_=+)")),
    ("django-secret-key-40", "DJANGO_SECRET_KEY", rand(40, ALNUM + "+/")),
    ("rails-secret-key-base", "SECRET_KEY_BASE", hexs(128)),
    ("flask-secret-key", "FLASK_SECRET_KEY", hexs(32)),
    ("laravel-app-key", "APP_KEY", "base64:" + b64(32)),
    ("nextauth-secret", "NEXTAUTH_SECRET", b64(32)),
    ("openssl-rand-base64-30", "SESSION_SECRET", b64(30)),
    ("openssl-rand-hex-20", "COOKIE_SECRET", hexs(40)),
    ("jwt-signing-key", "JWT_SECRET_KEY", rand(40, ALNUM + "/+")),
    ("jwt-token", "SERVICE_TOKEN", jwt()),
    ("recaptcha-secret", "RECAPTCHA_SECRET_KEY", "6L" + rand(38, ALNUM + "_-")),
    ("gcp-service-account-json", "GOOGLE_CREDENTIALS", gcp_sa),
    ("gcp-api-key", "GOOGLE_API_KEY", "AIza" + rand(35, ALNUM + "_-")),
    ("azure-storage-connection-string", "AZURE_STORAGE_CONNECTION_STRING",
     f"DefaultEndpointsProtocol=https;AccountName=examplestore;AccountKey={b64(64)};EndpointSuffix=core.windows.net"),
    ("azure-client-secret", "AZURE_CLIENT_SECRET", rand(3) + "8Q~" + rand(34, ALNUM + "~_.-")),
    ("azure-storage-key", "AZURE_STORAGE_KEY", b64(64)),
    ("github-pat", "GITHUB_TOKEN", "ghp_" + rand(36)),
    ("github-fine-grained-pat", "GH_TOKEN", "github_pat_" + rand(22) + "_" + rand(59)),
    ("slack-bot-token", "SLACK_BOT_TOKEN", f"xoxb-{rng.randint(10**10, 10**11)}-{rng.randint(10**10, 10**11)}-{rand(24)}"),
    ("slack-webhook-url", "SLACK_WEBHOOK_URL", f"https://hooks.slack.com/services/T{rand(8).upper()}/B{rand(8).upper()}/{rand(24)}"),
    ("stripe-secret-key", "STRIPE_SECRET_KEY", "sk_test_" + rand(99)),
    ("twilio-auth-token", "TWILIO_AUTH_TOKEN", hexs(32)),
    ("sendgrid-api-key", "SENDGRID_API_KEY", "SG." + rand(22, ALNUM + "_-") + "." + rand(43, ALNUM + "_-")),
    ("datadog-api-key", "DD_API_KEY", hexs(32)),
    ("datadog-app-key", "DD_APP_KEY", hexs(40)),
    ("openai-api-key", "OPENAI_API_KEY", "sk-proj-" + rand(48, ALNUM + "_-")),
    ("vault-token", "VAULT_TOKEN", "hvs." + rand(24)),
    ("npm-token", "NPM_TOKEN", "npm_" + rand(36)),
    ("pypi-token", "PYPI_TOKEN", "pypi-" + rand(80, ALNUM + "_-")),
    ("tls-private-key", "TLS_KEY", pem("PRIVATE KEY", 1200)),
    ("tls-certificate", "TLS_CERT", pem("CERTIFICATE", 900)),
    ("ssh-private-key", "SSH_PRIVATE_KEY", pem("OPENSSH PRIVATE KEY", 400)),
    ("bcrypt-hash", "ADMIN_PASSWORD_HASH", "$2b$12$" + rand(53, ALNUM + "./")),
    ("argon2-hash", "PASSWORD_HASH", "$argon2id$v=19$m=65536,t=3,p=4$" + b64(16).rstrip("=") + "$" + b64(32).rstrip("=")),
    ("uuid", "INSTANCE_ID", str(uuid.UUID(int=rng.getrandbits(128)))),
    ("sha1-hex", "BUILD_SHA", hashlib.sha1(b"synthetic").hexdigest()),
    ("base64-blob", "ENCRYPTION_KEY", b64(48)),
    ("memberlist-key", "MEMBERLIST_SECRET_KEY", b64(192)),
    ("grafana-admin-password", "GF_SECURITY_ADMIN_PASSWORD", rand(40)),
    ("postgres-url", "DATABASE_URL", f"postgres://app:{rand(40)}@db.example.internal:5432/app"),
    ("redis-password", "REDIS_PASSWORD", rand(40)),
    ("minio-style-irrelevant-uppercase-40", "LICENSE_KEY", rand(40, string.ascii_uppercase + string.digits)),
    ("disable-aws-session-token", "DISABLE_AWS_SESSION_TOKEN", "true"),
    ("aws-region-and-role", "AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/app"),
]


def indent(text, n):
    pad = " " * n
    return "\n".join(pad + line if line else line for line in text.splitlines())


def block(value, n):
    return "|-\n" + indent(value, n) if "\n" in value else json.dumps(value)


docs = []
expects = []
for name, var, value in SAMPLES:
    expects.append(f"# expect: Deployment fp/{name} allow")
    docs.append(f"""apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: fp}}
stringData:
  {var}: {block(value, 4)}""")
    arg = value if "\n" not in value else "multi-line value elided"
    docs.append(f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: fp}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: app
        image: ghcr.io/example/app:1.0
        args: [{json.dumps("--" + var.lower().replace("_", "-") + "=" + arg)}]
        env:
        - name: {var}
          value: {block(value, 12)}
        envFrom:
        - secretRef: {{name: {name}}}
        volumeMounts:
        - {{name: secret, mountPath: /etc/secret}}
      volumes:
      - name: secret
        secret: {{secretName: {name}}}""")

header = """# False-positive corpus (generated by scripts/gen-false-positive-corpus.py; synthetic values,
# never real secrets): secrets and configs of frameworks, other clouds and SaaS, TLS material,
# password hashes, UUIDs and base64 blobs, each as an env literal under its usual name, in a
# Secret imported by envFrom and mounted as files, and as an argument. None is AWS key
# material: every workload is allowed. scripts/detection-rates.sh reports the rate.
"""
with open("tests/corpus/60-false-positive-corpus.yaml", "w") as f:
    f.write(header + "\n".join(expects) + "\n" + "\n---\n".join(docs) + "\n")
print(f"{len(SAMPLES)} samples")
