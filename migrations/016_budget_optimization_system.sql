-- Migration 016: budget optimization system
-- Application budgets, their line items, and AI recommendations to fit funder rules.
-- ROLLBACK: DROP TABLE IF EXISTS ai_budget_recommendations, budget_line_items, budgets;

CREATE TABLE IF NOT EXISTS budgets (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    application_id VARCHAR(255) NOT NULL UNIQUE REFERENCES applications (id) ON DELETE CASCADE,
    currency CHAR(3) NOT NULL DEFAULT 'USD',
    total_requested DECIMAL(14, 2) NOT NULL DEFAULT 0,
    indirect_rate DECIMAL(5, 4),
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS budget_line_items (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    budget_id VARCHAR(255) NOT NULL REFERENCES budgets (id) ON DELETE CASCADE,
    category VARCHAR(50) NOT NULL
        CHECK (category IN ('personnel', 'equipment', 'travel', 'supplies', 'contractual', 'other')),
    description VARCHAR(500) NOT NULL,
    quantity DECIMAL(10, 2) NOT NULL DEFAULT 1,
    unit_cost DECIMAL(14, 2) NOT NULL,
    justification TEXT
);

CREATE INDEX IF NOT EXISTS idx_budget_line_items_budget_id ON budget_line_items (budget_id);

CREATE TABLE IF NOT EXISTS ai_budget_recommendations (
    id VARCHAR(255) PRIMARY KEY DEFAULT gen_random_uuid()::text,
    budget_id VARCHAR(255) NOT NULL REFERENCES budgets (id) ON DELETE CASCADE,
    line_item_id VARCHAR(255) REFERENCES budget_line_items (id) ON DELETE CASCADE,
    recommendation TEXT NOT NULL,
    estimated_savings DECIMAL(14, 2),
    status VARCHAR(20) NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'applied', 'dismissed')),
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);
