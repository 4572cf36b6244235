{
  "targets": [
    {
      "target_name": "emdb_native",
      "sources": ["emdb_native.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter"],
      "xcode_settings": {
        "OTHER_CFLAGS": ["-Wall", "-Wextra", "-Wno-unused-parameter"]
      }
    }
  ]
}
