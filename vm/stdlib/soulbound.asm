; soulbound: the key can never be resold or given away; it stays an
; entitlement of its holder forever. Parameters: none.
.version 1
.equ SOULBOUND 100
    CTX mode
    JUMPI entitled
    DENY SOULBOUND
entitled:
    PUSH 0
    ALLOW
