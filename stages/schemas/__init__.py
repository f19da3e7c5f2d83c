"""Each params section's schema, in a module of its own that only the stages reading the section import: editing
one makes `dvc status` report those stages alone (the code deps in dvc.yaml follow imports)."""
