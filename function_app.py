"""Azure Functions entry point (Python v2 model): triggers only, each a thin adapter into `shared`."""

import azure.functions as func

app = func.FunctionApp()
