-- Migration 011: demo users seed
-- A demo organization with one user per role, for local stacks and review apps.
-- ROLLBACK: DELETE FROM users WHERE id LIKE 'demo-%'; DELETE FROM organizations WHERE id = 'demo-org';

INSERT INTO organizations (id, name, country_code, plan) VALUES
    ('demo-org', 'Demo Community Foundation', 'US', 'team')
ON CONFLICT (id) DO NOTHING;

INSERT INTO users (id, email, full_name, organization_id, role) VALUES
    ('demo-applicant', 'applicant@demo.example.com', 'Dana Applicant', 'demo-org', 'applicant'),
    ('demo-reviewer', 'reviewer@demo.example.com', 'Riley Reviewer', 'demo-org', 'reviewer'),
    ('demo-admin', 'admin@demo.example.com', 'Alex Admin', 'demo-org', 'admin')
ON CONFLICT (id) DO NOTHING;

INSERT INTO user_preferences (user_id, language, timezone, preferred_grant_categories) VALUES
    ('demo-applicant', 'en', 'America/New_York', ARRAY['community', 'education']),
    ('demo-reviewer', 'en', 'UTC', '{}'),
    ('demo-admin', 'en', 'UTC', '{}')
ON CONFLICT (user_id) DO NOTHING;
