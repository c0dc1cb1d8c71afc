"""URL routes of the example Django site: its views, and the admin at /admin/."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("form/", views.form, name="form"),
    path("upload/", views.upload, name="upload"),
    path("where/", views.where, name="where"),
    path("fail/", views.fail, name="fail"),
    path("admin/", admin.site.urls),
]
