pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.postgres",
    "tests.fixtures.kafka",
    "tests.fixtures.netns",
]
