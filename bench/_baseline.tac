# twistd -n --pidfile= -y bench/_baseline.tac: the benchmarks' bare Twisted
# baseline (see bench/_baseline_server.py; configured from the environment).
from bench._baseline_server import application_from_env

application = application_from_env()
