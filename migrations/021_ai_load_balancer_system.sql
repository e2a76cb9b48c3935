-- Migration 021: AI load balancer system
-- Provider endpoints the backend spreads AI requests over, their health, and routing.
-- ROLLBACK: DROP TABLE IF EXISTS ai_request_routing_logs, ai_load_balancer_health_checks, ai_load_balancer_endpoints;

CREATE TABLE IF NOT EXISTS ai_load_balancer_endpoints (
    id VARCHAR(255) PRIMARY KEY,
    provider VARCHAR(50) NOT NULL,
    region VARCHAR(50),
    base_url TEXT NOT NULL,
    models TEXT[] NOT NULL DEFAULT '{}',
    weight INTEGER NOT NULL DEFAULT 100 CHECK (weight >= 0),
    max_requests_per_minute INTEGER,
    is_active BOOLEAN DEFAULT true,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS ai_load_balancer_health_checks (
    id BIGSERIAL PRIMARY KEY,
    endpoint_id VARCHAR(255) NOT NULL
        REFERENCES ai_load_balancer_endpoints (id) ON DELETE CASCADE,
    healthy BOOLEAN NOT NULL,
    latency_ms INTEGER,
    error TEXT,
    checked_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_ai_load_balancer_health_checks_endpoint
    ON ai_load_balancer_health_checks (endpoint_id, checked_at DESC);

CREATE TABLE IF NOT EXISTS ai_request_routing_logs (
    id BIGSERIAL PRIMARY KEY,
    request_id VARCHAR(255) NOT NULL,
    endpoint_id VARCHAR(255) REFERENCES ai_load_balancer_endpoints (id) ON DELETE SET NULL,
    model VARCHAR(100) NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    status_code INTEGER,
    latency_ms INTEGER,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
