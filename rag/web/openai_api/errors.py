"""Failures in OpenAI's JSON error shape, with the status codes clients branch on.

The openai SDK turns the status into an exception class (401 AuthenticationError,
404 NotFoundError, 400 BadRequestError, 503 InternalServerError) and shows
``error.message``; other clients show the message as it is.
"""

from __future__ import annotations

from starlette.responses import JSONResponse


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str | None,
        param: str | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.kind = kind or ("server_error" if status >= 500 else "invalid_request_error")

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def bad_request(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, code, param)


def unknown_model(name: object, served: list[str]) -> ApiError:
    return ApiError(
        404,
        f"The model {name!r} does not exist; this server offers: {', '.join(served)}.",
        "model_not_found",
        "model",
    )


def unavailable(message: str) -> ApiError:
    return ApiError(503, message, "model_unavailable")


WRONG_KEY = ApiError(
    401, "Incorrect API key provided: send it as 'Authorization: Bearer KEY'.", "invalid_api_key"
)
