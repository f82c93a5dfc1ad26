-- The desk's databases, created once when the PostgreSQL volume is first initialized
-- (the postgres image runs the files of /docker-entrypoint-initdb.d on an empty data folder).
-- They belong to POSTGRES_USER, the role the entry point runs this file as.
--   optuna   Optuna's study storage   (SOLODESK_OPTUNA_STORAGE)
--   mlflow   the MLflow tracking server's backend store (runs and model registry)
--   prefect  the Prefect server's database (flows, deployments, runs)
CREATE DATABASE optuna;
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
