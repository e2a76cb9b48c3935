-- Migration 018: OpenAI assistants system
-- Assistants configured per organization, and the threads, messages and runs that use them.
-- ROLLBACK: DROP TABLE IF EXISTS ai_assistant_runs, ai_assistant_messages, ai_assistant_threads, ai_assistants;

CREATE TABLE IF NOT EXISTS ai_assistants (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    organization_id VARCHAR(255),
    openai_assistant_id VARCHAR(255) UNIQUE,
    name VARCHAR(255) NOT NULL,
    model VARCHAR(100) NOT NULL,
    instructions TEXT NOT NULL DEFAULT '',
    tools JSONB NOT NULL DEFAULT '[]'::jsonb,
    is_active BOOLEAN DEFAULT true,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS ai_assistant_threads (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    assistant_id VARCHAR(255) NOT NULL REFERENCES ai_assistants (id) ON DELETE CASCADE,
    user_id VARCHAR(255) NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    application_id VARCHAR(255) REFERENCES applications (id) ON DELETE SET NULL,
    openai_thread_id VARCHAR(255) UNIQUE,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_ai_assistant_threads_user_id ON ai_assistant_threads (user_id);

CREATE TABLE IF NOT EXISTS ai_assistant_messages (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    thread_id VARCHAR(255) NOT NULL REFERENCES ai_assistant_threads (id) ON DELETE CASCADE,
    role VARCHAR(20) NOT NULL CHECK (role IN ('user', 'assistant', 'tool')),
    content TEXT NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX IF NOT EXISTS idx_ai_assistant_messages_thread
    ON ai_assistant_messages (thread_id, created_at);

CREATE TABLE IF NOT EXISTS ai_assistant_runs (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    thread_id VARCHAR(255) NOT NULL REFERENCES ai_assistant_threads (id) ON DELETE CASCADE,
    openai_run_id VARCHAR(255) UNIQUE,
    status VARCHAR(30) NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'in_progress', 'requires_action', 'completed', 'failed',
                          'cancelled', 'expired')),
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    started_at TIMESTAMP,
    completed_at TIMESTAMP
);
