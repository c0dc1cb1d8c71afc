"""URL routes of the example Django site."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("form/", views.form, name="form"),
    path("upload/", views.upload, name="upload"),
    path("where/", views.where, name="where"),
    path("fail/", views.fail, name="fail"),
]
