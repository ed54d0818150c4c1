"""FastAPI dependencies: the instance's services, the current model, the optional bearer token."""

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from churnflow.serving.holder import LoadedModel
from churnflow.serving.services import Services

NO_CHAMPION = "no champion model yet: the service is waiting for the registry alias to be set"

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


def require_token(
    services: ServicesDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """401 unless the configured bearer token is presented (a no-op when none is configured)."""
    if not services.token_ok(credentials.credentials if credentials else None):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"}
        )
