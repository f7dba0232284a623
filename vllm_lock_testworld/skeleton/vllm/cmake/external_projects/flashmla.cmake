if(DEFINED ENV{FLASH_MLA_SRC_DIR})
  set(FLASH_MLA_SRC_DIR $ENV{FLASH_MLA_SRC_DIR})
endif()

if(FLASH_MLA_SRC_DIR)
  FetchContent_Declare(flashmla SOURCE_DIR ${FLASH_MLA_SRC_DIR})
else()
  FetchContent_Declare(
        flashmla
        GIT_REPOSITORY @FLASHMLA_URL@
        GIT_TAG @FLASHMLA_TAG@
        GIT_PROGRESS TRUE
        CONFIGURE_COMMAND ""
        BUILD_COMMAND ""
  )
endif()
FetchContent_MakeAvailable(flashmla)
