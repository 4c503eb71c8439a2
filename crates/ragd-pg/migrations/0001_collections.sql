-- ragd's collections, documents and chunks.
--
-- Every row carries its tenant. Requests run as the role `ragd_tenant`
-- with `ragd.tenant` set for their transaction only (SET LOCAL), and the
-- policies below let that role see and write only that tenant's rows: a
-- bug in ragd's SQL that forgot a tenant condition still could not reach
-- another tenant. The connecting role owns the tables; it works unfiltered
-- only for migrations, index builds and store-wide metrics.
--
-- Vectors live in one untyped `vector` column; each collection gets its
-- own HNSW index over `embedding::vector(dim)` restricted to its rows (a
-- partial expression index, created with the collection), so collections
-- of any dimension share the table and a search walks only its
-- collection's graph.

CREATE EXTENSION IF NOT EXISTS vector;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ragd_tenant') THEN
        CREATE ROLE ragd_tenant NOLOGIN;
    END IF;
END
$$;
GRANT ragd_tenant TO CURRENT_USER;

CREATE TABLE ragd_collections (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant      text COLLATE "C" NOT NULL,
    name        text COLLATE "C" NOT NULL,
    config      jsonb NOT NULL,
    -- Random at creation; with `seq` (bumped by every write) it is the
    -- collection's version, which caches key answers by.
    incarnation bigint NOT NULL,
    seq         bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, name)
);

CREATE TABLE ragd_documents (
    collection_id bigint NOT NULL REFERENCES ragd_collections (id) ON DELETE CASCADE,
    tenant        text COLLATE "C" NOT NULL,
    id            text COLLATE "C" NOT NULL,
    metadata      jsonb NOT NULL,
    PRIMARY KEY (collection_id, id)
);

CREATE TABLE ragd_chunks (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection_id bigint NOT NULL,
    tenant        text COLLATE "C" NOT NULL,
    doc_id        text COLLATE "C" NOT NULL,
    chunk_index   integer NOT NULL,
    text          text NOT NULL,
    embedding     vector NOT NULL,
    tsv           tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    FOREIGN KEY (collection_id, doc_id)
        REFERENCES ragd_documents (collection_id, id) ON DELETE CASCADE
);
CREATE INDEX ragd_chunks_document ON ragd_chunks (collection_id, doc_id, chunk_index);
CREATE INDEX ragd_chunks_tsv ON ragd_chunks USING gin (tsv);

ALTER TABLE ragd_collections ENABLE ROW LEVEL SECURITY;
ALTER TABLE ragd_documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE ragd_chunks ENABLE ROW LEVEL SECURITY;
CREATE POLICY ragd_tenant_rows ON ragd_collections TO ragd_tenant
    USING (tenant = current_setting('ragd.tenant', true))
    WITH CHECK (tenant = current_setting('ragd.tenant', true));
CREATE POLICY ragd_tenant_rows ON ragd_documents TO ragd_tenant
    USING (tenant = current_setting('ragd.tenant', true))
    WITH CHECK (tenant = current_setting('ragd.tenant', true));
CREATE POLICY ragd_tenant_rows ON ragd_chunks TO ragd_tenant
    USING (tenant = current_setting('ragd.tenant', true))
    WITH CHECK (tenant = current_setting('ragd.tenant', true));

DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO ragd_tenant', current_schema());
END
$$;
GRANT SELECT, INSERT, UPDATE, DELETE ON ragd_collections, ragd_documents, ragd_chunks TO ragd_tenant;
GRANT USAGE ON SEQUENCE ragd_collections_id_seq, ragd_chunks_id_seq TO ragd_tenant;
