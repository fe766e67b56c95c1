DROP TABLE vault_locks;
DROP TABLE vault_tokens;
DROP TABLE api_keys;
