"""The end-to-end pipeline behind run_all.sh: stages that call the project's commands."""
