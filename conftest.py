pytest_plugins = ["tollgate_devstack.pytest_plugin"]
