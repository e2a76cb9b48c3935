-- Migration 017: RAG knowledge base system
-- Knowledge sources chunked for retrieval-augmented generation, and what was retrieved.
-- Embeddings are REAL[] so the schema needs no extension; swap for pgvector when adopted.
-- ROLLBACK: DROP TABLE IF EXISTS ai_retrieval_logs, ai_knowledge_chunks, ai_knowledge_sources;

CREATE TABLE IF NOT EXISTS ai_knowledge_sources (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    organization_id VARCHAR(255),
    source_type VARCHAR(30) NOT NULL
        CHECK (source_type IN ('funder_guideline', 'past_application', 'document', 'faq', 'web')),
    title VARCHAR(500) NOT NULL,
    uri TEXT,
    content_hash CHAR(64) NOT NULL,
    indexed_at TIMESTAMP,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (organization_id, content_hash)
);

CREATE TABLE IF NOT EXISTS ai_knowledge_chunks (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    source_id VARCHAR(255) NOT NULL REFERENCES ai_knowledge_sources (id) ON DELETE CASCADE,
    chunk_index INTEGER NOT NULL,
    content TEXT NOT NULL,
    token_count INTEGER NOT NULL,
    embedding_model VARCHAR(100),
    embedding REAL[],
    search_vector TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
    UNIQUE (source_id, chunk_index)
);

CREATE INDEX IF NOT EXISTS idx_ai_knowledge_chunks_search
    ON ai_knowledge_chunks USING GIN (search_vector);

CREATE TABLE IF NOT EXISTS ai_retrieval_logs (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    user_id VARCHAR(255) REFERENCES users (id) ON DELETE SET NULL,
    query TEXT NOT NULL,
    chunk_ids VARCHAR(255)[] NOT NULL DEFAULT '{}',
    top_score REAL,
    latency_ms INTEGER,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
