"""Windows guests, driven through the QEMU guest agent: updates and provisioning."""
