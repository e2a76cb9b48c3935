"""Deployment pipeline for a Compose + PostgreSQL service."""
