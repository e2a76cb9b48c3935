-- Migration 023: hot counters
-- The sample backend's busiest table: GET /counters/<id> reads a row, POST /counters/<id>
-- adds one to it (deploy/stack/backend/app.py). The deploy benchmark and the zero-downtime
-- tests send their load here, so a lock on this table is felt by every request.
-- ROLLBACK: DROP TABLE IF EXISTS hot_counters;

CREATE TABLE IF NOT EXISTS hot_counters (
    id INTEGER PRIMARY KEY,
    hits BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

INSERT INTO hot_counters (id) SELECT g FROM generate_series(1, 100) AS g
ON CONFLICT (id) DO NOTHING;
