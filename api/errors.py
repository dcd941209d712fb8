"""Historian errors as HTTP answers: unknown tag 404, bad parameter 400 naming it."""

from litestar import Request, Response
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_404_NOT_FOUND

from historian.errors import InvalidParameterError, UnknownTagError


def unknown_tag(_: Request, exc: UnknownTagError) -> Response:
    """404 naming the tag."""
    return Response({"status_code": 404, "detail": str(exc), "tag": exc.name}, status_code=HTTP_404_NOT_FOUND)


def invalid_parameter(_: Request, exc: InvalidParameterError) -> Response:
    """400 naming the parameter and what is wrong with it."""
    return Response(
        {"status_code": 400, "detail": str(exc), "parameter": exc.parameter, "problem": exc.problem},
        status_code=HTTP_400_BAD_REQUEST,
    )


HANDLERS = {UnknownTagError: unknown_tag, InvalidParameterError: invalid_parameter}
