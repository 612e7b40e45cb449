package common // shared logging
