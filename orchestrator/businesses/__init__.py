"""Many businesses on one deployment (docs/SPEC.md §10): `ORCHESTRATOR_BUSINESSES_DIR` holds one
folder per business (`business.yaml` + `flows/`).

- `schema`: what `business.yaml` may say, as msgspec Structs (unknown keys refused)
- `loader`: YAML -> `BusinessConfig`, checked, problems at `file:line:col` with a hint
- `secrets`: `env:NAME` / `file:/path` references resolved (a literal secret is refused)
- `registry`: the businesses a server runs: numbers -> business, each business's own runtime
- `access`: admins per business and their roles; the operator token
- `limits`: conversations per day per business
"""
