import not_a_real_dependency  # noqa: F401


def handler(event, context):
    return 1
