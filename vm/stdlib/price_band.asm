; price_band: resale price between a floor and a ceiling, both inclusive.
; params[0] = floor, params[1] = ceiling (2**256-1 for none). Below the floor:
; PRICE_BELOW_FLOOR; above the ceiling: PRICE_ABOVE_CEILING; otherwise allowed
; with the class royalty. Always an entitlement.
.version 1
.equ BPS_DENOMINATOR 10000
.equ PRICE_BELOW_FLOOR 103
.equ PRICE_ABOVE_CEILING 104
    CTX mode
    JUMPI entitled
    CTX price
    PARAM 0
    LT
    JUMPI below
    CTX price
    PARAM 1
    GT
    JUMPI above
    CTX price
    CTX royalty_bps
    MUL
    PUSH BPS_DENOMINATOR
    DIV
    ALLOW
below:
    DENY PRICE_BELOW_FLOOR
above:
    DENY PRICE_ABOVE_CEILING
entitled:
    PUSH 0
    ALLOW
