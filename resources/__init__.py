"""Resources of the plugin: icons, QML styles, the sample model and the sample-scene generator."""
