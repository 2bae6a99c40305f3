"""The spottrain CDK app: one stack composed of notification, storage, instance-launch and workflow units."""
