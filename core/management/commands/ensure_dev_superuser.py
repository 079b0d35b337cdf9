import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Make sure a development superuser exists; print its password and token when created."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username, **options):
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"Development superuser '{username}' already exists.")
            return
        password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser(username=username, email="", password=password)
        token = Token.objects.create(user=user)
        self.stdout.write(self.style.SUCCESS("Created development superuser (shown only once):"))
        self.stdout.write(f"  username: {username}\n  password: {password}\n  token:    {token.key}")
        self.stdout.write("  admin:    http://127.0.0.1:8000/admin/   docs: http://127.0.0.1:8000/api/docs/")
