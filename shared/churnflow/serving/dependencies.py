"""FastAPI dependencies: the instance's services, the current model, the optional bearer token, body checks."""

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from churnflow.serving import scoring
from churnflow.serving.holder import LoadedModel
from churnflow.serving.services import Services

NO_CHAMPION = "no champion model yet: the service is waiting for the registry alias to be set"
NOT_JSON = "the body must be JSON (content-type: application/json)"

_bearer = HTTPBearer(auto_error=False, description="Required only when CHURNFLOW_API_TOKEN is set.")


def get_services(request: Request) -> Services:
    """The services of the app handling this request (created by `create_app`)."""
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]


def require_model(services: ServicesDep) -> LoadedModel:
    """The model serving now; 503 while there is none."""
    model = services.holder.current
    if model is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, NO_CHAMPION)
    return model


ModelDep = Annotated[LoadedModel, Depends(require_model)]


def request_id(request: Request) -> str:
    """The id the app's entry gave this request (echoed as X-Request-ID, named in the body and the log)."""
    return request.scope[scoring.REQUEST_ID]  # type: ignore[no-any-return]


RequestIdDep = Annotated[str, Depends(request_id)]


def require_token(
    services: ServicesDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """401 unless the configured bearer token is presented (a no-op when none is configured)."""
    if not services.token_ok(credentials.credentials if credentials else None):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"}
        )


def require_json(request: Request) -> None:
    """415 unless the body is declared `application/json` (parameters such as charset allowed)."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, NOT_JSON)


async def batch_within_limit(request: Request, services: ServicesDep) -> None:
    """413 for a batch over the limit, counted before FastAPI validates any of its items.

    Runs after FastAPI parsed the body (`guard.StrictJSONRequest` caches it) and `require_json`.
    """
    body = await request.json() if await request.body() else None
    customers = body.get("customers") if isinstance(body, dict) else None
    if isinstance(customers, list) and len(customers) > services.settings.max_batch:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, scoring.batch_too_large(len(customers), services.settings)
        )
