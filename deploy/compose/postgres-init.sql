-- MLflow's backend store, beside the service's database (the cluster does the same: k8s/base/postgres.yaml).
CREATE DATABASE mlflow;
