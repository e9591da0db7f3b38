"""The HTTP channel: REST ingest (POST /v1/readings), batches, bearer tokens (embedded issuer or Keycloak)."""
