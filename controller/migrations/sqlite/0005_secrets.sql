-- Slipway controller schema v5: sealed secrets. Values are stored only encrypted under the
-- controller's master key (a file outside the database); hosts' X25519 public keys are kept
-- so each pinned version can be sealed to each host.

CREATE TABLE host_secret_keys (
    host          TEXT   PRIMARY KEY,
    public_key    TEXT   NOT NULL,           -- base64 of 32 bytes
    registered_at BIGINT NOT NULL
);

CREATE TABLE secrets (
    app       TEXT   NOT NULL,
    name      TEXT   NOT NULL,
    version   BIGINT NOT NULL,
    value_enc TEXT   NOT NULL,               -- base64(nonce || ChaCha20-Poly1305 ciphertext)
    digest    TEXT   NOT NULL,               -- sha256:<hex> of the value, pinned by releases
    set_by    TEXT   NOT NULL,
    set_at    BIGINT NOT NULL,
    PRIMARY KEY (app, name, version)
);
