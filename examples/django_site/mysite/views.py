"""Views of the example Django site: a page, a CSRF-protected form, an upload, a 500."""

from __future__ import annotations

import hashlib

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "index.html")


@require_http_methods(["GET", "POST"])
def form(request: HttpRequest) -> HttpResponse:
    """GET shows the form; POST (CSRF-checked by the middleware) echoes the name."""
    name = request.POST.get("name", "") if request.method == "POST" else None
    return render(request, "form.html", {"name": name})


@csrf_exempt  # an API endpoint for scripts (curl -F file=@...), not a browser form
@require_POST
def upload(request: HttpRequest) -> HttpResponse:
    uploaded = request.FILES.get("file")
    if uploaded is None:
        return HttpResponseBadRequest("send a multipart form with a 'file' field")
    digest = hashlib.sha256()
    for chunk in uploaded.chunks():
        digest.update(chunk)
    return JsonResponse(
        {"name": uploaded.name, "size": uploaded.size, "sha256": digest.hexdigest()}
    )


@require_GET
def where(request: HttpRequest) -> HttpResponse:
    """What Django derived from the request: handy for checking a web server's config."""
    return JsonResponse(
        {
            "path": request.path,
            "path_info": request.path_info,
            "script_name": request.META.get("SCRIPT_NAME", ""),
            "host": request.get_host(),
            "secure": request.is_secure(),
            "absolute_uri": request.build_absolute_uri(),
        }
    )


def fail(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("this Django view fails on purpose")
