"""The API's OpenAPI document: the response models and the builder that reads the route table."""

from .document import DOCUMENT_PATH, OpenAPIDocument, Operation, openapi_document

__all__ = ["DOCUMENT_PATH", "OpenAPIDocument", "Operation", "openapi_document"]
