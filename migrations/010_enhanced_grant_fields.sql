-- Migration 010: enhanced grant fields
-- Eligibility, funding range and categories on grants, plus a category catalogue.
-- ROLLBACK: DROP TABLE IF EXISTS grant_category_assignments, grant_categories;
-- ROLLBACK: ALTER TABLE grants DROP COLUMN IF EXISTS eligibility_criteria, DROP COLUMN IF EXISTS funding_min, DROP COLUMN IF EXISTS funding_max, DROP COLUMN IF EXISTS application_url, DROP COLUMN IF EXISTS is_rolling;

DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'grants'
          AND column_name = 'eligibility_criteria'
    ) THEN
        ALTER TABLE grants ADD COLUMN eligibility_criteria JSONB NOT NULL DEFAULT '{}'::jsonb;
    END IF;

    -- The range's two columns and their check arrive together, under one guard.
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'grants'
          AND column_name = 'funding_min'
    ) THEN
        ALTER TABLE grants ADD COLUMN funding_min DECIMAL(14, 2);
        ALTER TABLE grants ADD COLUMN funding_max DECIMAL(14, 2);
        -- lint: allow add-check-constraint -- both columns were just added NULL: every row passes
        -- (its scan of grants runs under the lock the two ADD COLUMNs above already hold).
        ALTER TABLE grants ADD CONSTRAINT chk_grants_funding_range
            CHECK (funding_min IS NULL OR funding_max IS NULL OR funding_min <= funding_max);
    END IF;

    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'grants'
          AND column_name = 'application_url'
    ) THEN
        ALTER TABLE grants ADD COLUMN application_url TEXT;
    END IF;

    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'grants'
          AND column_name = 'is_rolling'
    ) THEN
        ALTER TABLE grants ADD COLUMN is_rolling BOOLEAN NOT NULL DEFAULT false;
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS grant_categories (
    slug VARCHAR(100) PRIMARY KEY,
    label VARCHAR(255) NOT NULL,
    parent_slug VARCHAR(100) REFERENCES grant_categories (slug)
);

CREATE TABLE IF NOT EXISTS grant_category_assignments (
    grant_id VARCHAR(255) NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    category_slug VARCHAR(100) NOT NULL REFERENCES grant_categories (slug),
    PRIMARY KEY (grant_id, category_slug)
);

CREATE INDEX IF NOT EXISTS idx_grant_category_assignments_category
    ON grant_category_assignments (category_slug);

INSERT INTO grant_categories (slug, label) VALUES
    ('research', 'Research'),
    ('education', 'Education'),
    ('health', 'Health'),
    ('environment', 'Environment'),
    ('arts', 'Arts and culture'),
    ('community', 'Community development')
ON CONFLICT (slug) DO NOTHING;
