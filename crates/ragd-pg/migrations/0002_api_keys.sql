-- API keys shared by every replica (`ragd serve --keys postgres`): only
-- each key's SHA-256 is stored, never the key. Tenants' own guard
-- policies live next to them, as they do in the keys file. These tables
-- are the server's (read by the owner role), not a tenant's.

CREATE TABLE ragd_api_keys (
    id      text COLLATE "C" PRIMARY KEY,
    tenant  text COLLATE "C" NOT NULL,
    name    text,
    prefix  text NOT NULL,
    sha256  text NOT NULL UNIQUE,
    created bigint NOT NULL
);

CREATE TABLE ragd_guard_policies (
    tenant text COLLATE "C" PRIMARY KEY,
    policy jsonb NOT NULL
);
