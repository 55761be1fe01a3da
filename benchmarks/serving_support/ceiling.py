"""The ceiling for benchmarks/serving.py: a bare Starlette app on uvicorn that answers a constant.

``python ceiling.py PORT`` serves ``POST /v2/models/{name}/infer`` (reads the body, answers a
fixed V2 response shaped like Shipyard's for one row) and ``GET /v2/health/ready`` on 127.0.0.1,
one process, access log off, uvicorn's defaults otherwise (uvloop and httptools when installed,
as for KServe's server). Nothing is decoded, validated or predicted: it is what HTTP + JSON
framing alone costs on this machine.
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

#: A V2 response of the same shape and about the same size as Shipyard's answer for one row.
ANSWER = (
    b'{"model_name":"ceiling","model_version":null,"id":"00000000-0000-0000-0000-000000000000",'
    b'"parameters":null,"outputs":[{"name":"label","shape":[1],"datatype":"INT64","parameters":null,'
    b'"data":[0]},{"name":"probabilities","shape":[1,2],"datatype":"FP32","parameters":null,'
    b'"data":[1.0,5.4798703e-9]}]}'
)


async def infer(request: Request) -> Response:
    """Reads the request body and answers the constant."""
    await request.body()
    return Response(ANSWER, media_type="application/json")


async def ready(request: Request) -> Response:
    """Always ready."""
    return Response(b"{}", media_type="application/json")


app = Starlette(
    routes=[
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
    ]
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
