"""The API handlers: each runs a request through the stages (auth -> body -> routing ->
admission -> upstream -> answer); `gateway.routes` is the table that names them."""
