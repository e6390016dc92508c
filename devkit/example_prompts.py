"""The example assistants the demo and the end-to-end tests seed a local S3 with.

Written for NovaVoice. ``seed_example_prompts`` creates the prompts bucket (versioned, as the
CloudFormation template in ``aws/`` makes it) and uploads one Markdown prompt per assistant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

    from sessions.config import Settings

EXAMPLE_PROMPTS = {
    "esther": (
        "You are Esther, the receptionist of the Lindenhof medical practice.\n"
        "Greet callers warmly, find out whether they need an appointment, a prescription\n"
        "renewal or to leave a message for a doctor, and keep every answer short: the\n"
        "caller is on the phone. Never give medical advice; offer a call-back instead.\n"
    ),
    "support-agent": (
        "You are the support line of Northwind Internet.\n"
        "Ask for the customer number first. Walk callers through restarting their router\n"
        "before anything else, one step at a time, and confirm each step was done.\n"
        "If the line is still down, open a ticket and read its number back slowly.\n"
    ),
}


def seed_example_prompts(client: S3Client, settings: Settings) -> None:
    """Create the versioned prompts bucket and upload the example prompts (blocking)."""
    bucket = settings.prompts.bucket
    if settings.aws_region == "us-east-1":
        client.create_bucket(Bucket=bucket)
    else:
        client.create_bucket(
            Bucket=bucket,
            CreateBucketConfiguration={"LocationConstraint": settings.aws_region},  # type: ignore[typeddict-item]
        )
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for name, text in EXAMPLE_PROMPTS.items():
        client.put_object(
            Bucket=bucket, Key=f"{settings.prompts.prefix}{name}.md", Body=text.encode()
        )
