"""The northbound MQTT side: the only paho-mqtt user (connection, topics, discovery, output)."""
