"""One adapter per kind of sender (``events`` = our shape, ``alertmanager``, ``pagerduty``,
``grafana``, ``recall``), each turning a verified body into signals; ``registry`` lists them
and finds the source of a request; ``base`` holds what they share (errors naming the field)."""
